// The login form: the key goes to sessionStorage (via signIn), never into a URL.

import { h } from './dom.js';

export function mount(main, { message, signIn }) {
  const input = h('input', { id: 'login-key', name: 'key', type: 'password', autocomplete: 'off', spellcheck: 'false', required: true, placeholder: 'sk-…' });
  const error = h('p', { id: 'login-error', class: 'form-error', role: 'alert' }, message && message !== 'Signed out.' ? message : '');
  const submit = h('button', { id: 'login-submit', type: 'submit', class: 'btn btn-primary' }, 'Sign in');
  const form = h('form', { id: 'login-form', class: 'login-form' },
    h('label', { for: 'login-key' }, 'Master key or virtual key'),
    input, submit, error);
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const value = input.value.trim();
    if (!value) {
      error.textContent = 'Enter a key.';
      return;
    }
    submit.disabled = true;
    error.textContent = '';
    const failed = await signIn(value);
    submit.disabled = false;
    if (failed) {
      error.textContent = failed;
      input.select();
    }
  });
  const root = h('section', { id: 'login', class: 'page page-narrow', 'data-ready': 'true' },
    h('h1', null, 'Sign in'),
    h('p', { class: 'muted' }, 'This gateway has a master key. Sign in with it, or with a virtual key (sk-…) to see your own requests and spend. The key is kept in this tab only.'),
    message === 'Signed out.' ? h('p', { class: 'notice notice-ok', role: 'status' }, 'Signed out.') : null,
    form);
  main.append(root);
  input.focus();
}
