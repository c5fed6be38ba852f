"""The panes of the app, one package each."""
