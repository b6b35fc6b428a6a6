"""Running header and "Page x of y" on every page of a reportlab document (trip reports, certificates).

reportlab knows the total number of pages only once the story is laid out, so the canvas keeps each page's
state and draws the decorations when the document is saved (the usual two-pass canvas pattern).
"""

from __future__ import annotations

from typing import Any

MM = 72 / 25.4


def numbered_canvas(header: str, footer: str = "") -> Any:
    """A canvas class for ``doc.build(story, canvasmaker=...)``: ``header`` top left on every page, ``footer``
    bottom left, "Page x of y" bottom right."""
    from reportlab.pdfgen import canvas

    class NumberedCanvas(canvas.Canvas):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._pages: list[dict[str, Any]] = []

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
