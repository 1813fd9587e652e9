"""Model facts: the built-in catalog, config.json parsing and local checkpoint directories."""

from vlm_operator.models.facts import ModelFacts, QuantFacts, TextFacts, VisionFacts

__all__ = ["ModelFacts", "QuantFacts", "TextFacts", "VisionFacts"]
