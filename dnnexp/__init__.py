"""dnnexp: config-driven deep-learning experiments (Hydra configs -> Lightning runs -> reports).

Importing this package is cheap: torch and lightning are imported only once a run starts.
"""

__version__ = "0.1.0"
