from .pane import HyperparametersPane

__all__ = ["HyperparametersPane"]
