//! Hashes the password in the browser before a form sends it (spec core-api B.5.1):
//! master = PBKDF2-SHA256(password, salt, iterations, 32 bytes), login hash =
//! base64(PBKDF2-SHA256(master, password, 1, 32 bytes)). Inlined into the login and
//! registration pages; WebCrypto when the page is a secure context, else the same
//! computation in plain JavaScript (plain-HTTP deployments have no crypto.subtle).
(function () {
  "use strict";
  var utf8 = new TextEncoder();

  // SHA-256 on 32-bit words, enough for HMAC and one-block PBKDF2.
  var K = new Int32Array([
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2
  ]);
  var IV = new Int32Array([
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19
  ]);
  var W = new Int32Array(64);

  function compress(h, block) {
    var i, a, b, c, d, e, f, g, k, t1, t2, x, y;
    for (i = 0; i < 16; i++) W[i] = block[i];
    for (i = 16; i < 64; i++) {
      x = W[i - 15];
      y = W[i - 2];
      W[i] = (W[i - 16] + (((x >>> 7) | (x << 25)) ^ ((x >>> 18) | (x << 14)) ^ (x >>> 3)) +
        W[i - 7] + (((y >>> 17) | (y << 15)) ^ ((y >>> 19) | (y << 13)) ^ (y >>> 10))) | 0;
    }
    a = h[0]; b = h[1]; c = h[2]; d = h[3]; e = h[4]; f = h[5]; g = h[6]; k = h[7];
    for (i = 0; i < 64; i++) {
      t1 = (k + (((e >>> 6) | (e << 26)) ^ ((e >>> 11) | (e << 21)) ^ ((e >>> 25) | (e << 7))) +
        ((e & f) ^ (~e & g)) + K[i] + W[i]) | 0;
      t2 = ((((a >>> 2) | (a << 30)) ^ ((a >>> 13) | (a << 19)) ^ ((a >>> 22) | (a << 10))) +
        ((a & b) ^ (a & c) ^ (b & c))) | 0;
      k = g; g = f; f = e; e = (d + t1) | 0; d = c; c = b; b = a; a = (t1 + t2) | 0;
    }
    return Int32Array.of((h[0] + a) | 0, (h[1] + b) | 0, (h[2] + c) | 0, (h[3] + d) | 0,
      (h[4] + e) | 0, (h[5] + f) | 0, (h[6] + g) | 0, (h[7] + k) | 0);
  }

  // Hashes `bytes` from `state`, as if `before` bytes had already been hashed.
  function finish(state, bytes, before) {
    var total = bytes.length + 9;
    var padded = new Uint8Array(Math.ceil(total / 64) * 64);
    padded.set(bytes);
    padded[bytes.length] = 0x80;
    var bits = (bytes.length + before) * 8;
    var view = new DataView(padded.buffer);
    view.setUint32(padded.length - 8, Math.floor(bits / 0x100000000));
    view.setUint32(padded.length - 4, bits >>> 0);
    var block = new Int32Array(16);
    for (var off = 0; off < padded.length; off += 64) {
      for (var i = 0; i < 16; i++) block[i] = view.getInt32(off + i * 4);
      state = compress(state, block);
    }
    return state;
  }

  function wordsToBytes(words) {
    var out = new Uint8Array(words.length * 4);
    var view = new DataView(out.buffer);
    for (var i = 0; i < words.length; i++) view.setInt32(i * 4, words[i]);
    return out;
  }

  // PBKDF2-HMAC-SHA256 with a 32-byte output, in plain JavaScript.
  function pbkdf2Js(password, salt, iterations) {
    var key = password.length > 64 ? wordsToBytes(finish(IV, password, 0)) : password;
    var pad = new Uint8Array(64);
    var block = new Int32Array(16);
    function padState(byte) {
      pad.fill(byte);
      for (var i = 0; i < key.length; i++) pad[i] ^= key[i];
      var view = new DataView(pad.buffer);
      for (i = 0; i < 16; i++) block[i] = view.getInt32(i * 4);
      return compress(IV, block);
    }
    var inner = padState(0x36);
    var outer = padState(0x5c);
    var first = new Uint8Array(salt.length + 4);
    first.set(salt);
    first[salt.length + 3] = 1;
    var u = finish(outer, wordsToBytes(finish(inner, first, 64)), 64);
    var t = Int32Array.from(u);
    // Later rounds hash 32 bytes: one padded block each for the inner and outer hash.
    var msg = new Int32Array(16);
    msg[8] = 0x80000000 | 0;
    msg[15] = (64 + 32) * 8;
    for (var n = 1; n < iterations; n++) {
      msg.set(u);
      msg.set(compress(inner, msg));
      u = compress(outer, msg);
      for (var j = 0; j < 8; j++) t[j] ^= u[j];
    }
    return wordsToBytes(t);
  }

  async function pbkdf2(password, salt, iterations) {
    if (window.crypto && window.crypto.subtle) {
      var key = await crypto.subtle.importKey("raw", password, "PBKDF2", false, ["deriveBits"]);
      var bits = await crypto.subtle.deriveBits(
        { name: "PBKDF2", hash: "SHA-256", salt: salt, iterations: iterations }, key, 256);
      return new Uint8Array(bits);
    }
    return pbkdf2Js(password, salt, iterations);
  }

  function base64(bytes) {
    var s = "";
    for (var i = 0; i < bytes.length; i++) s += String.fromCharCode(bytes[i]);
    return btoa(s);
  }

  async function loginHash(password, salt, iterations) {
    var pw = utf8.encode(password);
    var master = await pbkdf2(pw, utf8.encode(salt), iterations);
    return base64(await pbkdf2(master, pw, 1));
  }

  // On submit: checks the confirmation field if the form has one, hashes the password
  // into the `passphrase` field, then `send(fail)`; `fail(text)` (also called with the
  // error when anything throws) clears the hash, enables the button again and shows the
  // text. The clear password has no name: only the hash leaves the browser.
  function onSubmit(form, salt, iterations, send) {
    var password = form.querySelector("#password");
    var confirm = form.querySelector("#password-confirm");
    var hashed = form.querySelector("input[name=passphrase]");
    var button = form.querySelector("button[type=submit]");
    var status = document.getElementById("status");
    function say(text, isError) {
      status.textContent = text;
      status.className = isError ? "error" : "info";
    }
    function fail(text) {
      hashed.value = "";
      button.disabled = false;
      say(text, true);
    }
    form.addEventListener("submit", async function (event) {
      event.preventDefault();
      if (confirm && confirm.value !== password.value) {
        say(form.dataset.msgMismatch, true);
        confirm.focus();
        return;
      }
      button.disabled = true;
      say(form.dataset.msgWorking, false);
      try {
        hashed.value = await loginHash(password.value, salt, iterations);
        await send(fail);
      } catch (e) {
        fail(form.dataset.msgFailed + " (" + e + ")");
      }
    });
  }

  // For the browser tests: both implementations, to compare them.
  window.hearthPassphrase = {
    loginHash: loginHash,
    onSubmit: onSubmit,
    pbkdf2Js: function (p, s, n) { return base64(pbkdf2Js(utf8.encode(p), utf8.encode(s), n)); },
    pbkdf2: async function (p, s, n) { return base64(await pbkdf2(utf8.encode(p), utf8.encode(s), n)); }
  };

  var form = document.querySelector("form[data-salt]");
  if (!form) return;
  onSubmit(form, form.dataset.salt, parseInt(form.dataset.iterations, 10), function () {
    form.submit();
  });
})();
