"""fraudstream: streaming fraud scoring that keeps learning from late labels."""
__version__ = "0.1.0"
