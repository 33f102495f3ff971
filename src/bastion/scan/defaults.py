"""Defaults of the scan settings that the CLI shows in its help, in a module that imports nothing heavy."""

#: Random draws averaged per gradient (EOT) through a defended model's random preprocessing steps.
EOT_SAMPLES = 8
