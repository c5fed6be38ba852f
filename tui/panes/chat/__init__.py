from .pane import ChatPane

__all__ = ["ChatPane"]
