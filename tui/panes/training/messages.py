"""Messages the Training pane's widgets post to themselves (what goes to the App is in
``tunedeck.tui.messages``)."""

from textual.message import Message


class PlotLibraryLoaded(Message):
    """plotext is imported (posted from the thread that imported it): a plot waiting for it draws."""
