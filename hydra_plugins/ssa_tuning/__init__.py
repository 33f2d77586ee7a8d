"""The project's Hydra plugins (Hydra instantiates sweepers from the ``hydra_plugins`` namespace only)."""
