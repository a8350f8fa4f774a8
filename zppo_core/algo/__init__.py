"""Pure algorithm pieces of ZPPO, no models and no I/O: advantages, losses, replay buffer, prompt builders."""
