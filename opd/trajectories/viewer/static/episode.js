// The episode page: steps arrive as JSON a chunk at a time, as the reader scrolls or jumps, and are
// built with createElement and textContent only, so no episode text is ever parsed as HTML.
// Keys: → or j next step, ← or k previous step, Home and End the first and last.
"use strict";
(function () {
  const root = document.getElementById("steps");
  if (!root) return;
  const episode = root.dataset.episode;
  const total = Number(root.dataset.steps);
  const teacher = root.dataset.teacher;
  const loading = document.getElementById("loading");
  const gotoInput = document.getElementById("goto");
  const CHUNK = 50; // steps per request while scrolling (the server caps a request at 100)
  let loaded = 0; // steps 0 .. loaded-1 are on the page
  let pending = null; // the request in flight
  let current = -1; // the step the stepper is on

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function fixed(x) {
    return x === null ? "–" : x.toFixed(3);
  }

  function tokenTitle(t) {
    const lines = ["token " + JSON.stringify(t.text) + "  (id " + t.id + ")", "student log p   " + fixed(t.student)];
    if (t.teacher !== null) {
      lines.push("teacher log p   " + fixed(t.teacher) + (t.outside_topk ? "  (outside the teacher's top k: log tail mass, an upper bound)" : ""));
      lines.push("student − teacher   " + fixed(t.divergence) + " nats");
    }
    if (t.alternatives.length) {
      lines.push("teacher's most likely tokens:");
      for (const [text, logprob] of t.alternatives) lines.push("  " + JSON.stringify(text) + "   " + fixed(logprob));
    }
    return lines.join("\n");
  }

  function tokenStrip(tokens) {
    const strip = el("div", "tokens");
    for (const t of tokens) {
      const span = el("span", "tok" + (t.bin === null ? "" : " b" + t.bin) + (t.outside_topk ? " outside" : ""), t.text);
      span.title = tokenTitle(t);
      strip.appendChild(span);
    }
    return strip;
  }

  function block(label, text, className) {
    const box = el("div", "block" + (className ? " " + className : ""));
    box.appendChild(el("div", "label", label));
    box.appendChild(el("pre", "text", text));
    return box;
  }

  function tag(text, className) {
    return el("span", "tag" + (className ? " " + className : ""), text);
  }

  function studentBlock(s, decoded) {
    const box = el("div", "block student");
    box.appendChild(el("div", "label", "student"));
    const annotated = s.tokens.some((t) => t.teacher !== null);
    if (decoded && s.tokens.length) {
      box.appendChild(tokenStrip(s.tokens));
    } else {
      box.appendChild(el("pre", "text", s.action));
      if (annotated) {
        box.appendChild(el("div", "label muted", "tokens by id (the episode's tokenizer is not on this machine)"));
        box.appendChild(tokenStrip(s.tokens));
      }
    }
    return box;
  }

  function renderStep(s, decoded) {
    const section = el("section", "step");
    section.id = "step-" + s.index;
    const head = el("header", "step-head");
    head.appendChild(el("h3", null, "step " + s.index));
    if (s.error_kind) head.appendChild(tag("error: " + s.error_kind, "bad"));
    if (s.reward) head.appendChild(tag("reward " + s.reward));
    if (s.terminated) head.appendChild(tag("final"));
    if (s.truncated) head.appendChild(tag("turn limit"));
    if (s.divergence) {
      const d = s.divergence;
      head.appendChild(
        tag("rKL est. " + fixed(d.reverse_kl) + " nats/token · top-1 agrees " + Math.round(100 * d.top1) + "% · outside top-k " + d.outside_topk, "muted")
      );
    }
    section.appendChild(head);
    section.appendChild(studentBlock(s, decoded));
    for (const call of s.tool_calls) section.appendChild(block("tool call", JSON.stringify(call, null, 2), "call"));
    for (const result of s.tool_results) {
      const failed = result.status && result.status !== "ok";
      const label = "tool result · " + (result.name || "") + (result.status ? " · " + result.status : "") + (result.truncated ? " · truncated" : "");
      section.appendChild(block(label, result.output === undefined ? JSON.stringify(result) : String(result.output), failed ? "result error" : "result"));
    }
    if (s.turn_verdict) {
      const v = s.turn_verdict;
      const grade = "user turn " + (v.user_turn + 1) + " graded · reward " + v.reward + (v.success ? " · success" : " · not solved");
      section.appendChild(block(grade, v.reason || "", v.success ? "result" : "result error"));
    }
    if (s.follow_up) {
      section.appendChild(block("user · turn " + (s.follow_up[0] + 1), s.follow_up[1], "user"));
    } else if (!s.tool_results.length && s.observation) {
      section.appendChild(block(s.error_kind ? "error" : "observation", s.observation, s.error_kind ? "result error" : "result"));
    }
    for (const c of s.critiques) {
      const verdict = c.score === null ? " · unannotated" : " · score " + c.score + (c.uncertainty === null ? "" : " · uncertainty " + c.uncertainty.toFixed(2));
      const box = block("critique by " + c.teacher + verdict, c.score === null ? c.error || "" : c.critique, "critique");
      if (c.corrected_action) {
        box.appendChild(el("div", "label", "suggested action"));
        box.appendChild(el("pre", "text", c.corrected_action));
      }
      if (c.usage && c.usage.calls !== undefined) {
        const cost = c.usage.cost_usd === null ? "cost unknown" : "$" + c.usage.cost_usd.toFixed(4);
        const tokens = c.usage.prompt_tokens + c.usage.completion_tokens;
        box.appendChild(el("div", "label", c.usage.calls + " calls + " + c.usage.cached + " cached · " + tokens + " tokens · " + cost));
      }
      section.appendChild(box);
    }
    return section;
  }

  async function loadChunk(size) {
    const start = loaded;
    const stop = Math.min(total, start + size);
    const query = "start=" + start + "&stop=" + stop + "&teacher=" + encodeURIComponent(teacher);
    const response = await fetch("/api/episodes/" + encodeURIComponent(episode) + "/steps?" + query);
    if (!response.ok) throw new Error("the server answered " + response.status);
    const data = await response.json();
    const fragment = document.createDocumentFragment();
    for (const s of data.steps) fragment.appendChild(renderStep(s, data.decoded));
    root.appendChild(fragment);
    loaded = data.steps.length ? start + data.steps.length : total; // a short answer means there is no more
    loading.textContent = loaded < total ? "loading steps… (" + loaded + " of " + total + ")" : "";
  }

  // Loads steps until step `count - 1` is on the page; one request at a time.
  async function ensure(count, size) {
    while (loaded < Math.min(count, total)) {
      if (!pending) pending = loadChunk(size).finally(() => (pending = null));
      try {
        await pending;
      } catch (error) {
        loading.textContent = "Could not load steps: " + error.message;
        return;
      }
    }
  }

  async function go(index) {
    index = Math.max(0, Math.min(total - 1, index));
    await ensure(index + 1, 100);
    const section = document.getElementById("step-" + index);
    if (!section) return;
    const previous = document.getElementById("step-" + current);
    if (previous) previous.classList.remove("current");
    section.classList.add("current");
    current = index;
    gotoInput.value = index + 1;
    section.scrollIntoView({ block: "start" });
    history.replaceState(null, "", "#step-" + index);
  }

  document.getElementById("prev").addEventListener("click", () => go(current - 1));
  document.getElementById("next").addEventListener("click", () => go(current + 1));
  gotoInput.addEventListener("change", () => go(Number(gotoInput.value) - 1));
  document.addEventListener("keydown", (event) => {
    if (event.target.closest("input, select, textarea") || event.altKey || event.ctrlKey || event.metaKey) return;
    const moves = { ArrowRight: current + 1, j: current + 1, ArrowLeft: current - 1, k: current - 1, Home: 0, End: total - 1 };
    if (event.key in moves && total > 0) {
      event.preventDefault();
      go(moves[event.key]);
    }
  });

  if (total === 0) return;
  // More steps when the end of the loaded ones comes into view.
  new IntersectionObserver((entries) => {
    if (entries.some((e) => e.isIntersecting) && loaded < total) ensure(loaded + CHUNK, CHUNK);
  }, { rootMargin: "800px" }).observe(loading);
  const wanted = /^#step-(\d+)$/.exec(location.hash);
  if (wanted) go(Number(wanted[1]));
  else ensure(CHUNK, CHUNK);
})();
