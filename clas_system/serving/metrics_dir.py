"""Where gunicorn workers keep their metrics, so that /metrics adds up every worker's figures.

prometheus_client chooses its storage when it is first imported: in memory, or files under
$PROMETHEUS_MULTIPROC_DIR. The master sets the variable to a fresh folder before it forks
workers, and prometheus_client is imported only after that (clas_system.serving.metrics is
imported by ServingApp.start, in each serving process); so this module does not import it.
"""
import os
import shutil
import tempfile

MULTIPROC_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"


def use_fresh_metrics_dir():
    """A new empty folder for this server's workers, named in the environment they inherit
    (a folder left by an earlier server would add its figures to ours)."""
    folder = tempfile.mkdtemp(prefix="clas-metrics-")
    os.environ[MULTIPROC_DIR_ENV] = folder
    return folder


def shared_metrics_dir():
    """The workers' metrics folder, or None when this process keeps its metrics to itself."""
    return os.environ.get(MULTIPROC_DIR_ENV) or None


def remove_metrics_dir(folder):
    shutil.rmtree(folder, ignore_errors=True)
