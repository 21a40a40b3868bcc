/* Task list and sessions pages: status badges follow /ws/dashboard/ in place. */
(function () {
  "use strict";
  const A = window.Agentsite;
  if (!A || !document.querySelector("[data-live-task-id]")) return;

  function rowsOf(taskId) {
    return document.querySelectorAll('[data-live-task-id="' + CSS.escape(String(taskId)) + '"]');
  }

  function applyStatus(taskId, status) {
    const rows = rowsOf(taskId);
    rows.forEach(function (row) {
      const badge = row.querySelector('[data-testid="task-status"]');
      if (badge) A.setBadge(badge, status);
    });
    return rows.length > 0;
  }

  // While the socket was down statuses may have moved: re-read the unfinished ones.
  function refreshUnfinished() {
    const ids = new Set();
    document.querySelectorAll("[data-live-task-id]").forEach(function (row) {
      const badge = row.querySelector('[data-testid="task-status"]');
      if (badge && !A.TERMINAL.has(badge.dataset.status)) ids.add(row.dataset.liveTaskId);
    });
    ids.forEach(function (id) {
      fetch("/api/tasks/" + encodeURIComponent(id) + "/", {
        credentials: "same-origin",
        headers: { Accept: "application/json" },
      })
        .then(function (response) {
          return response.ok ? response.json() : null;
        })
        .then(function (task) {
          if (task) applyStatus(task.id, task.status);
        })
        .catch(function () {});
    });
  }

  const notice = document.querySelector('[data-testid="new-tasks-notice"]');
  let openedBefore = false;
  A.liveSocket({
    path: function () {
      return "/ws/dashboard/";
    },
    onOpen: function () {
      if (openedBefore) refreshUnfinished();
      openedBefore = true;
    },
    onState: function () {},
    onMessage: function (message) {
      if (message.type !== "status" || !message.task) return;
      const shown = applyStatus(message.task.id, message.status);
      if (!shown && notice && message.status === "queued") notice.hidden = false;
    },
  });
})();
