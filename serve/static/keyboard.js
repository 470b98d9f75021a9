// The keyboard's geometry and drawing. The geometry is the sidecar's named layout `qwerty-en`
// (fl_app/decoder/keyboard.py: letter keys width/10 wide, rows offset 0, 0.5 and 1.5 keys, each
// key_height tall, a space-bar row below), so what the page draws is exactly the keyboard the
// decoder is told about, at whatever size the window gives it.

export const LAYOUT = {
  name: "qwerty-en",
  rows: ["qwertyuiop", "asdfghjkl", "zxcvbnm"],
  offsets: [0, 0.5, 1.5],
  keysPerRow: 10,
};

/** Key hitboxes (px from the keyboard's top-left) for a keyboard `width` wide. */
export function layoutKeys(width, keyHeight) {
  const kw = width / LAYOUT.keysPerRow;
  const keys = [];
  LAYOUT.rows.forEach((row, r) => {
    [...row].forEach((label, c) => {
      keys.push({ label, x: (LAYOUT.offsets[r] + c) * kw, y: r * keyHeight, w: kw, h: keyHeight });
    });
  });
  return keys;
}

/** The size a window of `windowWidth` px gets: phone-like key proportions, capped on desktops. */
export function fitKeyboard(windowWidth) {
  const width = Math.max(240, Math.min(windowWidth, 760));
  const keyHeight = Math.round(Math.min(Math.max((width / LAYOUT.keysPerRow) * 1.4, 40), 64));
  return { width, keyHeight, height: keyHeight * 4 };
}

/** The keyboard as the API's swipe format names it (docs/formats.md). */
export function keyboardSpec(geometry) {
  return {
    layout: LAYOUT.name,
    width: geometry.width,
    height: geometry.height,
    key_height: geometry.keyHeight,
  };
}

/** Key centres of a word's letters, in order: the path a perfect swipe would take. */
export function idealPath(keys, word) {
  const byLabel = new Map(keys.map((k) => [k.label, k]));
  return [...word.toLowerCase()]
    .map((ch) => byLabel.get(ch))
    .filter(Boolean)
    .map((k) => ({ x: k.x + k.w / 2, y: k.y + k.h / 2 }));
}

/** Builds the key elements inside `board` (replacing earlier ones) and sizes the canvas. */
export function renderKeyboard(board, canvas, geometry) {
  board.querySelectorAll(".key").forEach((el) => el.remove());
  board.style.width = `${geometry.width}px`;
  board.style.height = `${geometry.height}px`;
  const keys = layoutKeys(geometry.width, geometry.keyHeight);
  for (const k of keys) {
    board.appendChild(keyElement(k.label, k, `key-${k.label}`));
  }
  const kw = geometry.width / LAYOUT.keysPerRow;
  const space = { x: 2.5 * kw, y: 3 * geometry.keyHeight, w: 5 * kw, h: geometry.keyHeight };
  const el = keyElement("space", space, "key-space");
  el.classList.add("space");
  board.appendChild(el);
  const ratio = window.devicePixelRatio || 1;
  canvas.width = Math.round(geometry.width * ratio);
  canvas.height = Math.round(geometry.height * ratio);
  canvas.style.width = `${geometry.width}px`;
  canvas.style.height = `${geometry.height}px`;
  return keys;
}

function keyElement(text, box, id) {
  const el = document.createElement("div");
  el.className = "key";
  el.id = id;
  el.dataset.key = text;
  Object.assign(el.style, {
    left: `${box.x}px`,
    top: `${box.y}px`,
    width: `${box.w}px`,
    height: `${box.h}px`,
  });
  const cap = document.createElement("span");
  cap.textContent = text;
  el.appendChild(cap);
  return el;
}

/** Draws the swiped trace and, when given, the ideal path of a word on top of it (dashed, a
 *  ring on each letter's key centre, a filled one where it starts) on the overlay canvas. */
export function drawOverlay(canvas, trace, ideal) {
  const ctx = canvas.getContext("2d");
  const ratio = canvas.width / parseFloat(canvas.style.width || canvas.width);
  ctx.setTransform(1, 0, 0, 1, 0, 0);
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  const styles = getComputedStyle(document.documentElement);
  ctx.lineCap = "round";
  ctx.lineJoin = "round";
  if (trace && trace.length) {
    ctx.strokeStyle = styles.getPropertyValue("--accent").trim() || "#1f6feb";
    ctx.lineWidth = 6;
    ctx.globalAlpha = 0.6;
    polyline(ctx, trace);
    ctx.globalAlpha = 1;
  }
  if (ideal && ideal.length) {
    ctx.strokeStyle = styles.getPropertyValue("--ideal").trim() || "#e8590c";
    ctx.fillStyle = ctx.strokeStyle;
    ctx.lineWidth = 2.5;
    ctx.setLineDash([7, 6]);
    polyline(ctx, ideal);
    ctx.setLineDash([]);
    ideal.forEach((p, i) => {
      ctx.beginPath();
      ctx.arc(p.x, p.y, 6, 0, 2 * Math.PI);
      if (i === 0) ctx.fill();
      else ctx.stroke();
    });
  }
}

function polyline(ctx, points) {
  ctx.beginPath();
  ctx.moveTo(points[0].x, points[0].y);
  for (const p of points.slice(1)) ctx.lineTo(p.x, p.y);
  if (points.length === 1) ctx.lineTo(points[0].x + 0.1, points[0].y);
  ctx.stroke();
}
