"""TwiML, built with the twilio library's VoiceResponse."""

from __future__ import annotations

from twilio.twiml.voice_response import Connect, Dial, VoiceResponse


def connect_stream(stream_url: str, parameters: dict[str, str]) -> str:
    """Open a two-way Media Stream. Twilio drops query strings from stream URLs, so everything
    the stream needs travels as <Parameter>s and comes back in `start.customParameters`."""
    response = VoiceResponse()
    connect = Connect()
    stream = connect.stream(url=stream_url)
    for name, value in parameters.items():
        if value:
            stream.parameter(name=name, value=value)
    response.append(connect)
    return str(response)


def dial(number: str, *, timeout: int = 30, caller_id: str | None = None) -> str:
    """Hand the caller to a person (operators or an emergency service)."""
    response = VoiceResponse()
    d = Dial(timeout=timeout, caller_id=caller_id) if caller_id else Dial(timeout=timeout)
    d.number(number)
    response.append(d)
    return str(response)


# Twilio's own Vietnamese voice: the caller hears this when our side cannot take the call at all.
SAY_VOICE = "Google.vi-VN-Standard-A"
SAY_LANGUAGE = "vi-VN"


def apology(text: str, transfer_to: str | None = None) -> str:
    """Tell the caller we cannot take the call now, then hand them to a person or hang up."""
    response = VoiceResponse()
    response.say(text, voice=SAY_VOICE, language=SAY_LANGUAGE)
    if transfer_to:
        d = Dial(timeout=30)
        d.number(transfer_to)
        response.append(d)
    else:
        response.hangup()
    return str(response)


def hangup() -> str:
    response = VoiceResponse()
    response.hangup()
    return str(response)


def reject_busy() -> str:
    response = VoiceResponse()
    response.reject(reason="busy")
    return str(response)
