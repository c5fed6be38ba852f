"""The colour of a health finding's severity, as a theme variable: the Training pane's findings and
plot and the Checkpoints pane's table colour a finding the same way."""

SEVERITY_VARIABLE = {"bad": "error", "warn": "warning"}
