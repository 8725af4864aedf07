"""vtg-data: video temporal grounding corpora -> training data -> trained and evaluated models."""

__version__ = "0.1.0"
