"""Native kernels for the quantized layers, built on first use (see ``build``)."""
