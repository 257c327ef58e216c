"""Adapters to other libraries, above the core: ``transformers_adapter`` (Auto classes, pipeline,
Trainer) and ``hf_datasets`` (a ``datasets`` dataset as a ssamba data source). Each imports its
library itself; nothing in the core imports this package, and importing it imports nothing.
"""
