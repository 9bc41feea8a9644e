"""The NLU's intents: the call flows, tickets, console and training data all key on these names."""

from __future__ import annotations

REPORT_INTENTS: tuple[str, ...] = (
    "report_utilities",
    "report_infrastructure",
    "report_environment",
    "report_public_order",
    "report_disaster",
    "report_administration",
    "report_health",
)
ENQUIRY_INTENTS: tuple[str, ...] = ("ask_public_service", "ask_ticket_status", "ask_hotline_info")
CONVERSATION_INTENTS: tuple[str, ...] = (
    "greet",
    "goodbye",
    "affirm",
    "deny",
    "request_human",
    "repeat",
    "emergency",
    "out_of_scope",
    # Conversation repair: "thôi khỏi, không phản ánh nữa", "à nhầm, ...", "nói chậm thôi".
    "cancel",
    "correct",
    "slow_down",
)
INTENTS: tuple[str, ...] = REPORT_INTENTS + ENQUIRY_INTENTS + CONVERSATION_INTENTS
# What Rasa's FallbackClassifier answers below its confidence threshold.
FALLBACK_INTENT = "nlu_fallback"
