"""The BatchNorm study: train one network with and without BatchNorm and compare.

Reproduces Figure 1 of Ioffe & Szegedy (2015, arXiv 1502.03167) with
``python -m tinynet compare``; this package is the library behind that command.

>>> from tinynet.study import StudyConfig, run_study, write_data, write_plots   # doctest: +SKIP
>>> config = StudyConfig.from_preset("paper", steps=5000)                        # doctest: +SKIP
>>> result = run_study(config, (x_train, y_train, x_test, y_test))               # doctest: +SKIP
>>> write_data(result, "runs/compare"); write_plots(result, "runs/compare")      # doctest: +SKIP
"""

from .config import PRESETS, StudyConfig
from .runs import RunResult, StudyResult, build_pair, evaluate_with_probe, run_study

__all__ = ["PRESETS", "StudyConfig", "RunResult", "StudyResult", "build_pair", "evaluate_with_probe", "run_study"]
