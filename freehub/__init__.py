"""freehub: data-free meta-learning from public model hubs."""

__version__ = "0.1.0"
