"""Running header and "Page x of y" on every page of a reportlab document (trip reports, certificates).

reportlab knows the total number of pages only once the story is laid out, so the canvas keeps each page's
state and draws the decorations when the document is saved (the usual two-pass canvas pattern).
"""

from __future__ import annotations

import time
from typing import Any

MM = 72 / 25.4


def numbered_canvas(header: str, footer: str = "", created_ms: int | None = None) -> Any:
    """A canvas class for ``doc.build(story, canvasmaker=...)``: ``header`` top left on every page, ``footer``
    bottom left, "Page x of y" bottom right. With ``created_ms`` (an issued document: its issue date) the PDF
    is the same bytes at every rendering: that instant is its CreationDate and ModDate (not the moment of the
    download) and its file id is derived from the content."""
    from reportlab.lib.utils import TimeStamp
    from reportlab.pdfgen import canvas

    class NumberedCanvas(canvas.Canvas):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            if created_ms is not None:
                kwargs["invariant"] = 1
            super().__init__(*args, **kwargs)
            self._pages: list[dict[str, Any]] = []
            if created_ms is not None:
                stamp = TimeStamp(invariant=1)
                stamp.t = created_ms // 1000
                stamp.lt = time.gmtime(stamp.t)
                stamp.YMDhms = tuple(stamp.lt)[:6]
                self._doc._timeStamp = stamp

        def showPage(self) -> None:  # noqa: N802 - reportlab's name
            self._pages.append(dict(self.__dict__))
            self._startPage()

        def save(self) -> None:
            total = len(self._pages)
            for state in self._pages:
                self.__dict__.update(state)
                self._decorate(total)
                super().showPage()
            super().save()

        def _decorate(self, total: int) -> None:
            w, h = self._pagesize
            self.saveState()
            self.setFont("Helvetica", 7)
            self.setFillGray(0.3)
            self.drawString(12 * MM, h - 8 * MM, header)
            if footer:
                self.drawString(12 * MM, 6 * MM, footer)
            self.drawRightString(w - 12 * MM, 6 * MM, f"Page {self._pageNumber} of {total}")
            self.restoreState()

    return NumberedCanvas
