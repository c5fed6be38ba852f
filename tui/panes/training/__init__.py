from .pane import TrainingPane

__all__ = ["TrainingPane"]
