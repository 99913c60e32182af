"""netspec's version, in a leaf module: what reads it (resolve, compile) imports no package __init__."""

__version__ = "0.1.0"
