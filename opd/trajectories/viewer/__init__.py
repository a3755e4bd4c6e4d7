"""``opd view``: every run and episode of a trajectory store in the browser, read-only.

A FastAPI app with server-rendered Jinja2 pages and a little plain JavaScript
(no build step, nothing from a CDN): runs with their configs and episode
statistics, a filtered episodes table, each episode turn by turn with every
student token coloured by its divergence from the teacher, and two runs side
by side. It only reads: the store is opened read-only, and every piece of
episode text is escaped (see docs/viewer.md).
"""

from opd.trajectories.viewer.app import create_app

__all__ = ["create_app"]
