"""Quảng Trị AI hotline: an offline Vietnamese voice hotline on Twilio Media Streams."""

__version__ = "0.1.0"
