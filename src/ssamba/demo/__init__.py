"""`ssamba demo`: pretrain SSAMBA and SSAST on real audio on a CPU, probe them, write a report."""

from ssamba.demo.pipeline import DEFAULT_CACHE, DemoConfig, DemoResult, run_demo

__all__ = ["DEFAULT_CACHE", "DemoConfig", "DemoResult", "run_demo"]
