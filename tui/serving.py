"""Serving a checkpoint from the app: one ``mlx_lm.server`` child, owned by the App.

The Checkpoints pane asks (``ServingToggled``); the App's ``CheckpointServing`` starts or stops
the server and reports back (``ServingChanged``) so the pane and the status line can show the URL.
Starting waits for the server's ``/health`` in a thread worker of the App, so it survives the pane;
the App stops the server when it quits (the child also exits by itself if the app dies).
"""

from __future__ import annotations

from typing import Optional

from tunedeck.core.checkpoints import Checkpoint

from .messages import ServingChanged


class CheckpointServing:
    """The App's model server. ``app`` runs the start in a thread worker and receives the news."""

    def __init__(self, app, port: Optional[int] = None):
        self.app = app
        self.port = port
        self.server = None
        self.iteration: Optional[int] = None
        self.label = ""

    @property
    def url(self) -> Optional[str]:
        return self.server.base_url if self.server is not None and self.server.running else None

    def toggle(self, checkpoint: Checkpoint) -> None:
        serving = self.server is not None
        same = self.iteration == checkpoint.iteration
        self.stop()
        if not (serving and same):
            self.start(checkpoint)

    def start(self, checkpoint: Checkpoint) -> None:
        from tunedeck.core.serve import DEFAULT_PORT, ModelServer, free_port, port_is_free, serve_target

        target = serve_target(checkpoint.path.parent.parent, str(checkpoint.iteration))
        # The usual port when it is free (clients remember it), else any free one.
        port = self.port or (DEFAULT_PORT if port_is_free(DEFAULT_PORT) else free_port())
        self.server, self.iteration, self.label = ModelServer(target, port=port), checkpoint.iteration, target.label
        self.app.run_worker(lambda: self._start(self.server), thread=True, exclusive=True,
                            group="serving", exit_on_error=False)

    def _start(self, server) -> None:
        try:
            server.start()
        except Exception as exc:  # a failed start is news for the user, not a crash of the app
            if server is self.server:
                self.server, self.iteration = None, None
            self.app.post_message(ServingChanged(None, self.label, error=str(exc)))
            return
        self.app.post_message(ServingChanged(server.base_url, self.label, iteration=self.iteration))

    def stop(self) -> bool:
        """Stop the server if there is one; True when one was running."""
        server, self.server, self.iteration = self.server, None, None
        if server is None:
            return False
        server.stop()
        self.app.post_message(ServingChanged(None, self.label))
        return True

