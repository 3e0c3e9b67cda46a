"""muxd: receive SMS on hundreds of serial modems and forward them to Onlinesim."""

__version__ = "0.1.0"
