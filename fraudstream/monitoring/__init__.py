"""Monitoring: prequential metrics, drift detectors, Prometheus metrics and HTTP endpoints.

* :mod:`fraudstream.monitoring.metrics`: every Prometheus metric (``Metrics(registry)``).
* :mod:`fraudstream.monitoring.prequential`: score-before-learn metrics (``Prequential``).
* :mod:`fraudstream.monitoring.drift`: ADWIN / Page-Hinkley / PSI (``DriftMonitor``).
* :mod:`fraudstream.monitoring.server`: ``create_app`` and ``MonitoringServer``.

Submodules are imported by name so that importing one does not pull in the others' heavy
dependencies (river, FastAPI).
"""
