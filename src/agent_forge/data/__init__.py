"""Data: built-in tasks with verifiable answers, real-dataset adapters, the tokenizer, packed batches.

Modules are imported directly (``agent_forge.data.tasks``, ``.sources``, ``.tokenizer``, ``.dataset``,
``.sandbox``) so that loading a config, which needs only ``sources.SourceConfig``, stays fast.
"""
