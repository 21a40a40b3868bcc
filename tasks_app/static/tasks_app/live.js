/* Shared by the dashboard pages: a WebSocket that reconnects by itself, and status badges.
 * Everything shown to the user goes through textContent: server data is never HTML. */
(function () {
  "use strict";

  const TERMINAL = new Set(["succeeded", "failed", "timed_out", "cancelled", "dead_letter"]);
  const RETRYABLE = new Set(["failed", "timed_out", "cancelled", "dead_letter"]);
  // 1000 follows "end"; the 44xx codes are refusals that a retry cannot change.
  const FINAL_CODES = new Set([1000, 4400, 4401, 4403, 4404]);
  const MAX_BACKOFF_MS = 15000;

  function statusLabel(status) {
    const words = String(status || "unknown").replace(/_/g, " ");
    return words.charAt(0).toUpperCase() + words.slice(1);
  }

  function setBadge(badge, status) {
    badge.dataset.status = status;
    badge.className = "badge status-" + String(status).replace(/[^a-z_]/g, "");
    badge.textContent = statusLabel(status);
  }

  function socketUrl(path) {
    return (location.protocol === "https:" ? "wss://" : "ws://") + location.host + path;
  }

  /* Keeps a socket open: options.path() is called before each attempt (so a stream can
   * resume from its last seq); options.onState(state, closeCode) reports "connecting",
   * "live", "reconnecting" or "closed". */
  function liveSocket(options) {
    let attempt = 0;
    let timer = null;
    let socket = null;
    let stopped = false;

    function open() {
      timer = null;
      options.onState("connecting");
      socket = new WebSocket(socketUrl(options.path()));
      socket.addEventListener("open", function () {
        attempt = 0;
        options.onState("live");
        if (options.onOpen) options.onOpen();
      });
      socket.addEventListener("message", function (message) {
        let data;
        try {
          data = JSON.parse(message.data);
        } catch (error) {
          return;
        }
        options.onMessage(data);
      });
      socket.addEventListener("close", function (event) {
        socket = null;
        if (stopped) return;
        if (FINAL_CODES.has(event.code)) {
          stopped = true;
          options.onState("closed", event.code);
          return;
        }
        // Exponential backoff with jitter, so a restarted server is not stampeded.
        const delay = Math.min(MAX_BACKOFF_MS, 500 * Math.pow(2, attempt)) * (0.5 + Math.random() / 2);
        attempt += 1;
        options.onState("reconnecting", event.code);
        timer = setTimeout(open, delay);
      });
    }

    window.addEventListener("online", function () {
      if (timer !== null) {
        clearTimeout(timer);
        open();
      }
    });
    open();
    return {
      stop: function () {
        stopped = true;
        if (timer !== null) clearTimeout(timer);
        if (socket) socket.close(1000);
      },
    };
  }

  window.Agentsite = {
    TERMINAL: TERMINAL,
    RETRYABLE: RETRYABLE,
    statusLabel: statusLabel,
    setBadge: setBadge,
    liveSocket: liveSocket,
  };
})();
