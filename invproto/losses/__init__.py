"""Training losses, each selected in the config as ``loss: {target: <import path>, params: {...}}``."""
