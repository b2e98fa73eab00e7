"""LeWorldModel: a JEPA world model trained from pixels with SIGReg, for latent planning."""

__version__ = "0.1.0"


def load(path, device="cpu"):
    """Load a checkpoint directory and return the model in eval mode (see `lewm.checkpoint`).
    `device`: "cpu", "cuda", "cuda:N", "mps", "auto" or a torch.device; one that this machine
    lacks is a LewmError."""
    from lewm.checkpoint import load_model
    from lewm.devices import resolve_device

    if isinstance(device, str):
        kind = device.split(":")[0]
        checked = resolve_device(kind)
        device = checked if kind == "auto" else device
    return load_model(path, device=device)
