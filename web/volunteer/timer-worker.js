'use strict';
// Ticks for the volunteer page. A page's own timers are slowed down, to
// once a minute, while its tab is hidden; a dedicated worker's are not, so
// the page keeps its heartbeats and job deadlines on these ticks. The page
// posts the interval in milliseconds (0 stops the ticks).
(function () {
  let id = 0;
  self.onmessage = function (ev) {
    clearInterval(id);
    id = 0;
    const ms = Number(ev.data);
    if (ms > 0) id = setInterval(function () { self.postMessage(0); }, ms);
  };
})();
