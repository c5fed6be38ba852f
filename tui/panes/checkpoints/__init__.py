from .pane import CheckpointsPane

__all__ = ["CheckpointsPane"]
