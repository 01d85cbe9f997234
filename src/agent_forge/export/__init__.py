"""Edge export (Phase 7): ONNX graphs, the packed ternary format with its standalone numpy runtime, a
batch-1 latency/memory profile and a self-checking deployment bundle.

Modules: ``onnx`` (export, int8 variant, onnxruntime runner), ``ternary`` (packed weights), ``runtime``
(numpy-only package copied into every bundle), ``agreement`` and ``profile`` (measurements), ``bundle``
(folder layout, README, manifest) and ``build`` (all of it in order, for the phase and the CLI).
"""
