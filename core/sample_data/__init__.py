"""The demo project's sample data and config, copied by ``tunedeck demo`` (core/demo_project.py)."""
