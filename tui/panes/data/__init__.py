"""The Data pane: browse, check, measure, convert and generate datasets."""

from .pane import DataPane

__all__ = ["DataPane"]
