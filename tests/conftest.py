"Shared pytest setup: every test writes its cache and outputs into temporary folders."
import os, pytest
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    "Point the artifact cache at a per-test temporary folder so tests never touch ~/.cache."
    monkeypatch.setenv('COHORT_INRS_CACHE', str(tmp_path/'cache'))
    yield

import torch
torch.set_num_threads(1)  # the tests use tiny networks: one thread is fastest and immune to a busy machine
