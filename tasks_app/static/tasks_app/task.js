/* The task page: renders the task's event stream live and keeps the status in sync.
 * Reconnects by itself and resumes after the last seq it rendered. Every piece of
 * server data is inserted with textContent, never as HTML. */
(function () {
  "use strict";
  const A = window.Agentsite;
  const page = document.querySelector("[data-task-page]");
  if (!A || !page) return;

  const stream = page.querySelector('[data-testid="stream"]');
  const badge = page.querySelector('[data-testid="task-status"]');
  const connection = page.querySelector('[data-testid="connection-state"]');
  const cancelForm = page.querySelector('[data-testid="cancel-form"]');
  const retryForm = page.querySelector('[data-testid="retry-form"]');
  const attempts = page.querySelector('[data-testid="task-attempts"]');
  const changes = page.querySelector('[data-testid="changes-panel"]');
  const result = {
    status: page.querySelector('[data-testid="result-status"]'),
    cost: page.querySelector('[data-testid="result-cost"]'),
    turns: page.querySelector('[data-testid="result-turns"]'),
    duration: page.querySelector('[data-testid="result-duration"]'),
    error: page.querySelector('[data-testid="result-error"]'),
    text: page.querySelector('[data-testid="result-text"]'),
  };

  let lastSeq = 0;
  let ended = false;
  const toolNames = new Map();
  // Text arrives as deltas (partial) and then once complete per message block. Deltas go
  // to the open block of their message; a complete text replaces the oldest unconfirmed
  // block of its message, so the page converges on it without showing it twice.
  const openBlocks = new Map();
  const unconfirmed = [];
  // The text block being written, not stored yet: shown after event `after` until an
  // event with a higher seq (which holds all its text) arrives; each preview replaces
  // the one before. {text: its text node, block: the block it opened, or null}.
  let preview = null;

  /* ---- small DOM helpers ---- */

  function node(tag, className, text) {
    const element = document.createElement(tag);
    if (className) element.className = className;
    if (text !== undefined && text !== null) element.textContent = String(text);
    return element;
  }

  function collapsible(className, summaryText, bodyText, testId) {
    const details = node("details", className);
    if (testId) details.dataset.testid = testId;
    details.append(node("summary", "", summaryText), node("pre", "", bodyText));
    return details;
  }

  function pretty(value) {
    if (typeof value === "string") return value;
    try {
      return JSON.stringify(value, null, 2);
    } catch (error) {
      return String(value);
    }
  }

  function nearBottom() {
    return stream.scrollHeight - stream.scrollTop - stream.clientHeight < 80;
  }

  function add(element, event) {
    const follow = nearBottom();
    if (event) {
      element.dataset.seq = event.seq;
      element.dataset.kind = event.kind;
      if (event.payload && event.payload.parent_tool_use_id) element.classList.add("nested");
    }
    stream.append(element);
    if (follow) stream.scrollTop = stream.scrollHeight;
  }

  function money(value) {
    if (value === null || value === undefined || value === "") return "—";
    const number = Number(value);
    return Number.isFinite(number) ? "$" + number.toFixed(4) : "—";
  }

  function seconds(ms) {
    if (ms === null || ms === undefined) return "—";
    return (Number(ms) / 1000).toFixed(1) + " s";
  }

  /* ---- text ---- */

  function newTextBlock(key, partial) {
    const block = node("div", "entry text");
    block.dataset.testid = "assistant-text";
    block.dataset.messageId = key;
    if (partial) {
      block.classList.add("streaming");
      unconfirmed.push(block);
      openBlocks.set(key, block);
    }
    return block;
  }

  // Appends a delta's text to the open block of its message, opening one if there is
  // none; returns the text node and the block it opened (or null).
  function appendToOpenBlock(event) {
    const payload = event.payload;
    const key = payload.message_id || "";
    let block = openBlocks.get(key);
    let opened = null;
    if (!block) {
      block = opened = newTextBlock(key, true);
      add(block, event);
    }
    const follow = nearBottom();
    const text = document.createTextNode(typeof payload.text === "string" ? payload.text : "");
    block.append(text);
    if (follow) stream.scrollTop = stream.scrollHeight;
    return { text: text, block: opened };
  }

  function renderText(event) {
    const payload = event.payload;
    const key = payload.message_id || "";
    const text = typeof payload.text === "string" ? payload.text : "";
    if (payload.partial) {
      appendToOpenBlock(event);
      return;
    }
    const index = unconfirmed.findIndex(function (block) {
      return block.dataset.messageId === key;
    });
    if (index >= 0) {
      const block = unconfirmed.splice(index, 1)[0];
      block.textContent = text;
      block.classList.remove("streaming");
      if (openBlocks.get(key) === block) openBlocks.delete(key);
      return;
    }
    const block = newTextBlock(key, false);
    block.textContent = text;
    add(block, event);
  }

  /* ---- other kinds ---- */

  function toolResultText(content) {
    if (typeof content === "string") return content;
    if (!Array.isArray(content)) return pretty(content);
    return content
      .map(function (part) {
        if (part && part.type === "text") return part.text;
        if (part && part.type === "image") return "[image]";
        return pretty(part);
      })
      .join("\n");
  }

  function renderToolUse(event) {
    const payload = event.payload;
    const name = payload.name || "tool";
    toolNames.set(payload.id, name);
    const details = collapsible("entry tool-use", "Tool: " + name, pretty(payload.input), "tool-use");
    details.dataset.toolUseId = payload.id || "";
    add(details, event);
  }

  function renderToolResult(event) {
    const payload = event.payload;
    const name = toolNames.get(payload.tool_use_id) || "tool";
    const summary = (payload.is_error ? "Error from " : "Result of ") + name;
    const details = collapsible(
      "entry tool-result" + (payload.is_error ? " is-error" : ""),
      summary,
      toolResultText(payload.content),
      payload.is_error ? "tool-error" : "tool-result"
    );
    add(details, event);
  }

  function renderStderr(event) {
    const last = stream.lastElementChild;
    // Consecutive stderr lines share one block.
    if (last && last.dataset.kind === "stderr") {
      last.querySelector("pre").append(document.createTextNode("\n" + (event.payload.text || "")));
      last.dataset.seq = event.seq;
      return;
    }
    const box = node("div", "entry stderr");
    box.dataset.testid = "stderr";
    box.append(node("span", "label", "stderr"), node("pre", "", event.payload.text || ""));
    add(box, event);
  }

  function renderResult(event) {
    const payload = event.payload;
    const line = node("p", "entry result-line" + (payload.is_error ? " is-error" : ""));
    line.dataset.testid = "result-event";
    const parts = [payload.is_error ? "Finished with an error" : "Finished"];
    if (payload.num_turns !== undefined) parts.push(payload.num_turns + " turns");
    if (payload.total_cost_usd !== undefined) parts.push(money(payload.total_cost_usd));
    line.textContent = parts.join(" · ");
    add(line, event);
    if (payload.total_cost_usd !== undefined) result.cost.textContent = money(payload.total_cost_usd);
    if (payload.num_turns !== undefined) result.turns.textContent = String(payload.num_turns);
    if (payload.duration_ms !== undefined) result.duration.textContent = seconds(payload.duration_ms);
    if (typeof payload.result === "string" && payload.result) {
      result.text.textContent = payload.result;
      result.text.hidden = false;
    }
  }

  function renderStatus(event) {
    const payload = event.payload;
    let text = "Status: " + A.statusLabel(payload.status);
    if (payload.reason) text += " (" + payload.reason + ")";
    const line = node("p", "entry status-change status-" + String(payload.status).replace(/[^a-z_]/g, ""), text);
    line.dataset.testid = "status-event";
    add(line, event);
    if (payload.error) add(node("p", "entry status-error", payload.error));
  }

  function renderRaw(event) {
    const payload = event.payload;
    const note = "Unparsed output" + (payload.error ? " (" + payload.error + ")" : "");
    add(collapsible("entry raw", note, payload.text || "", "raw-output"), event);
  }

  function renderSystem(event) {
    const payload = event.payload;
    const what = payload.subtype ? "System: " + payload.subtype : "System";
    const summary = payload.model ? what + " · " + payload.model : what;
    add(collapsible("entry system", summary, pretty(payload), "system-event"), event);
  }

  function renderUnknown(event) {
    const type = event.payload && event.payload.type ? event.payload.type : event.kind;
    add(collapsible("entry unknown", "Other event: " + type, pretty(event.payload), "unknown-event"), event);
  }

  const renderers = {
    text: renderText,
    tool_use: renderToolUse,
    tool_result: renderToolResult,
    stderr: renderStderr,
    result: renderResult,
    status: renderStatus,
    raw: renderRaw,
    system: renderSystem,
  };

  // A tool call or a result ends the text being streamed: later deltas start a new block.
  // Side output (stderr, system, raw) may interleave with deltas and does not.
  const SEALING = new Set(["tool_use", "tool_result", "result", "status"]);

  function endAttemptText() {
    // A status change ends the attempt: text never confirmed stays as it streamed.
    unconfirmed.splice(0).forEach(function (block) {
      block.classList.remove("streaming");
    });
  }

  function dropPreview() {
    if (!preview) return;
    preview.text.remove();
    if (preview.block) {
      // The block existed only for the preview: the stored event opens it again.
      preview.block.remove();
      openBlocks.delete(preview.block.dataset.messageId);
      const index = unconfirmed.indexOf(preview.block);
      if (index >= 0) unconfirmed.splice(index, 1);
    }
    preview = null;
  }

  function renderPreview(message) {
    if (message.after !== lastSeq || message.kind !== "text") return;
    dropPreview();
    preview = appendToOpenBlock({ seq: "", kind: "text", payload: message.payload });
  }

  function renderEvent(event) {
    if (event.seq <= lastSeq) return;
    dropPreview();
    lastSeq = event.seq;
    page.dataset.lastSeq = lastSeq;
    if (SEALING.has(event.kind)) openBlocks.clear();
    if (event.kind === "status") endAttemptText();
    (renderers[event.kind] || renderUnknown)(event);
  }

  /* ---- status, result panel, buttons ---- */

  function applyTask(status, task) {
    A.setBadge(badge, status);
    result.status.textContent = A.statusLabel(status);
    cancelForm.hidden = A.TERMINAL.has(status);
    retryForm.hidden = !A.RETRYABLE.has(status);
    if (!task) return;
    if (attempts && task.attempts !== undefined && task.max_attempts !== undefined) {
      attempts.textContent = task.attempts + " of " + task.max_attempts;
    }
    if (task.cost_usd !== null) result.cost.textContent = money(task.cost_usd);
    if (task.num_turns !== null) result.turns.textContent = String(task.num_turns);
    if (task.duration_ms !== null) result.duration.textContent = seconds(task.duration_ms);
    result.error.textContent = task.error || "";
    result.error.hidden = !task.error;
    if (task.result_text) {
      result.text.textContent = task.result_text;
      result.text.hidden = false;
    }
    if (task.files_changed && changes.hidden) showChanges(task);
  }

  /* ---- the changes panel, filled live when the task's work is committed ---- */

  const DIFF_OPEN_LINES = 400;

  function diffClass(line) {
    if (/^(\+\+\+|---|diff |index )/.test(line)) return "d-file";
    if (line.startsWith("@@")) return "d-hunk";
    if (line.startsWith("+")) return "d-add";
    if (line.startsWith("-")) return "d-del";
    return "";
  }

  function showChanges(task) {
    const one = (name) => changes.querySelector('[data-testid="' + name + '"]');
    const stat = one("changes-stat");
    stat.textContent = task.files_changed + " file" + (task.files_changed === 1 ? "" : "s") + " changed ";
    stat.append(node("span", "d-add", "+" + (task.insertions || 0)), " ", node("span", "d-del", "−" + (task.deletions || 0)));
    const branch = one("changes-branch");
    branch.replaceChildren("· branch ", node("code", "", task.branch || ""));
    branch.hidden = !task.branch;
    const pull = one("changes-pull-request");
    if (task.pull_request_url) pull.href = task.pull_request_url;
    pull.hidden = !task.pull_request_url;
    const note = one("changes-note");
    note.textContent = task.workspace_note || "";
    note.hidden = !task.workspace_note;
    const files = one("changed-files");
    files.replaceChildren(...(task.changed_files || []).map(function (file) {
      const item = node("li");
      item.append(node("code", "", file.path), " ");
      if (file.insertions === null) item.append(node("span", "meta", "binary"));
      else item.append(node("span", "d-add", "+" + file.insertions), " ", node("span", "d-del", "−" + file.deletions));
      return item;
    }));
    changes.hidden = false;
    fetch("/api/tasks/" + page.dataset.taskId + "/diff/", { credentials: "same-origin" })
      .then((response) => (response.ok ? response.text() : ""))
      .then(function (text) {
        const lines = text.split("\n");
        if (lines[lines.length - 1] === "") lines.pop();
        const pre = one("diff-text");
        pre.replaceChildren(...lines.map((line) => node("span", diffClass(line), line + "\n")));
        one("diff").open = lines.length <= DIFF_OPEN_LINES;
      });
  }

  const stateLabels = {
    connecting: "Connecting…",
    live: "Live",
    reconnecting: "Connection lost, reconnecting…",
  };
  const closedLabels = {
    1000: "Finished",
    4401: "Signed out: reload the page to log in",
    4403: "Refused by the server",
    4404: "This task is not available",
    4400: "Refused by the server",
  };

  function showState(state, code) {
    const key = state === "closed" ? "closed-" + code : state;
    connection.dataset.state = ended ? "finished" : key;
    if (ended) connection.textContent = "Finished";
    else if (state === "closed") connection.textContent = closedLabels[code] || "Closed";
    else connection.textContent = stateLabels[state] || state;
  }

  function onMessage(message) {
    if (message.type === "event") renderEvent(message);
    else if (message.type === "preview") renderPreview(message);
    else if (message.type === "status") applyTask(message.status, message.task);
    else if (message.type === "end") {
      ended = true;
      page.dataset.ended = "true";
    }
  }

  A.liveSocket({
    path: function () {
      return page.dataset.wsPath + "?after=" + lastSeq;
    },
    onState: showState,
    onMessage: onMessage,
  });
})();
