// The episodes table: its total is counted after the page has drawn, since counting a large store costs more than a page.
"use strict";
(function () {
  const count = document.getElementById("count");
  if (!count) return;
  count.textContent = "(counting…)";
  fetch(count.dataset.src)
    .then((response) => (response.ok ? response.json() : Promise.reject(new Error(String(response.status)))))
    .then((data) => {
      count.textContent = "(" + data.count.toLocaleString("en") + (data.more ? "+" : "") + " matching)";
    })
    .catch(() => {
      count.textContent = "";
    });
})();
