// Small DOM helpers: the app builds its pages from elements, never from
// HTML strings, so text from the server is always text.

const PROPS = new Set(['value', 'checked', 'selected', 'disabled', 'readOnly', 'hidden', 'indeterminate']);

// h creates an element. attrs: class, dataset (object), on (object of
// event listeners), properties such as value or checked, and any other
// attribute (true gives an empty attribute, false/null/undefined none).
// children: nodes, strings, numbers, or arrays of them; null and false are
// skipped.
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  if (attrs) setAttrs(el, attrs);
  append(el, children);
  return el;
}

// svg creates an element in the SVG namespace, with attributes only.
export function svg(tag, attrs, ...children) {
  const el = document.createElementNS('http://www.w3.org/2000/svg', tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v !== null && v !== undefined && v !== false) el.setAttribute(k, String(v));
  }
  append(el, children);
  return el;
}

function setAttrs(el, attrs) {
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k === 'class') el.className = Array.isArray(v) ? v.filter(Boolean).join(' ') : v;
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (k === 'on') for (const [ev, fn] of Object.entries(v)) el.addEventListener(ev, fn);
    else if (k === 'text') el.textContent = v;
    else if (PROPS.has(k)) el[k] = v;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
}

export function append(parent, children) {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(parent, c);
    else parent.append(c instanceof Node ? c : String(c));
  }
  return parent;
}

// replace empties parent and appends children.
export function replace(parent, ...children) {
  parent.replaceChildren();
  return append(parent, children);
}

let uid = 0;
// id returns a fresh element id with the prefix, for label/for pairs.
export function id(prefix = 'f') {
  uid += 1;
  return `${prefix}-${uid}`;
}

// field is a labelled input: a wrapper with a <label> and the control.
// attrs go to the <input>; hint adds a description tied by aria-describedby.
export function field(label, attrs = {}, hint) {
  const inputId = attrs.id || id('in');
  const hintId = hint ? inputId + '-hint' : null;
  const input = h(attrs.tag || 'input', { ...attrs, tag: null, id: inputId, 'aria-describedby': hintId });
  return {
    input,
    el: h('div', { class: 'field' },
      h('label', { for: inputId }, label),
      input,
      hint ? h('p', { class: 'hint', id: hintId }, hint) : null),
  };
}

// alertBox is an empty role=alert region; show sets its text, clear hides it.
export function alertBox() {
  const el = h('div', { class: 'alert', role: 'alert', hidden: true });
  return {
    el,
    show(msg) {
      el.textContent = msg;
      el.hidden = !msg;
    },
    clear() {
      el.textContent = '';
      el.hidden = true;
    },
  };
}

// statusBox is a polite live region for success messages.
export function statusBox() {
  const el = h('p', { class: 'status', role: 'status' });
  return {
    el,
    show(msg) {
      el.textContent = msg;
    },
    clear() {
      el.textContent = '';
    },
  };
}

// confirmDialog opens a modal <dialog> asking question; it resolves true
// when the person chose the confirming button.
export function confirmDialog({ title, text, confirm, cancel = 'Cancel', danger = true }) {
  return new Promise((resolve) => {
    const titleId = id('dlg');
    const dlg = h('dialog', { class: 'dialog', 'aria-labelledby': titleId },
      h('form', { method: 'dialog' },
        h('h2', { id: titleId }, title),
        text ? h('p', null, text) : null,
        h('div', { class: 'actions' },
          h('button', { type: 'submit', value: 'cancel', class: 'secondary', autofocus: true }, cancel),
          h('button', { type: 'submit', value: 'confirm', class: danger ? 'danger' : 'primary' }, confirm))));
    dlg.addEventListener('close', () => {
      const ok = dlg.returnValue === 'confirm';
      dlg.remove();
      resolve(ok);
    });
    document.body.append(dlg);
    dlg.showModal();
  });
}

// copyText copies text to the clipboard, falling back to selecting the
// field so that the person can copy it by hand.
export async function copyText(text, fallbackInput) {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch {
    if (fallbackInput) {
      fallbackInput.focus();
      fallbackInput.select();
    }
    return false;
  }
}
