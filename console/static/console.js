// Refreshes the [data-live] regions of a page every data-refresh seconds while the tab is visible,
// by fetching the page again and swapping those regions in. A region the operator is using (it
// holds the focus or a ticked box) is left alone until they are done with it.
(function () {
  "use strict";
  var main = document.getElementById("main");
  var period = main ? Number(main.getAttribute("data-refresh")) : 0;
  if (!period) {
    return;
  }
  var busy = false;

  function inUse(region) {
    return region.contains(document.activeElement) || region.querySelector("input:checked");
  }

  async function refresh() {
    if (busy || document.hidden) {
      return;
    }
    busy = true;
    try {
      var response = await fetch(location.href, { credentials: "same-origin" });
      if (response.redirected || response.status === 401 || response.status === 403) {
        location.reload(); // the session ended: show the sign-in page
        return;
      }
      if (!response.ok) {
        return;
      }
      var fresh = new DOMParser().parseFromString(await response.text(), "text/html");
      document.querySelectorAll("[data-live]").forEach(function (region) {
        var replacement = fresh.getElementById(region.id);
        if (replacement && !inUse(region)) {
          region.replaceWith(document.importNode(replacement, true));
        }
      });
      document.documentElement.setAttribute("data-refreshed", String(Date.now()));
    } catch (error) {
      // Offline for a moment: the next round tries again.
    } finally {
      busy = false;
    }
  }

  setInterval(refresh, period * 1000);
  document.addEventListener("visibilitychange", function () {
    if (!document.hidden) {
      refresh();
    }
  });
})();
