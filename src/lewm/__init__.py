"""LeWorldModel: a JEPA world model trained from pixels with SIGReg, for latent planning."""

__version__ = "0.1.0"


def load(path, device="cpu"):
    """Load a checkpoint directory and return the model in eval mode (see `lewm.checkpoint`)."""
    from lewm.checkpoint import load_model

    return load_model(path, device=device)
