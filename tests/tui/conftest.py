"""Fixtures of the TUI tests: projects on the tiny model, one of them with a finished run."""

from __future__ import annotations

from pathlib import Path

import pytest

from .projects import train_to_the_end, write_project


@pytest.fixture
def project(tmp_path, tiny_model) -> Path:
    return write_project(tmp_path / "project", tiny_model)


@pytest.fixture(scope="session")
def finished_project(tmp_path_factory, tiny_model) -> Path:
    """A project with one finished 40-iteration run (checkpoints 10, 20, 30, 40)."""
    project = write_project(tmp_path_factory.mktemp("finished") / "project", tiny_model)
    train_to_the_end(project)
    return project


@pytest.fixture
def layouts(monkeypatch) -> list:
    """The screens laid out from now on, one entry per layout (each walks every widget)."""
    from textual.screen import Screen

    laid_out: list = []
    refresh_layout = Screen._refresh_layout

    def counted(screen, *args, **kwargs):
        laid_out.append(screen)
        return refresh_layout(screen, *args, **kwargs)

    monkeypatch.setattr(Screen, "_refresh_layout", counted)
    return laid_out
