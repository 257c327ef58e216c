"""ssamba.downstream: fine-tuning, linear probing and evaluation recipes, their metrics and reports."""
