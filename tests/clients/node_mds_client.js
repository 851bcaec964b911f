// Drives Node google-auth-library through Application Default Credentials
// against a metadata server, for tests/it/metadata_clients.rs. No credential
// file: only the environment wif-helper printed (GCE_METADATA_HOST and friends).
//
// usage: node node_mds_client.js AUDIENCE   (NODE_MODULES_DIR points at the installed node_modules)
// Prints one JSON line: {"ok": true, "class", "project", "token", "id_token"} or {"ok": false, "error"}.
'use strict';
const path = require('path');
const {GoogleAuth} = require(path.join(process.env.NODE_MODULES_DIR, 'google-auth-library'));

async function main() {
  const audience = process.argv[2];
  try {
    const auth = new GoogleAuth({scopes: ['https://www.googleapis.com/auth/cloud-platform']});
    const client = await auth.getClient();
    const {token} = await client.getAccessToken();
    const idClient = await auth.getIdTokenClient(audience);
    const headers = await idClient.getRequestHeaders();
    const authorization = typeof headers.get === 'function' ? headers.get('authorization') : headers.Authorization;
    const project = await auth.getProjectId();
    console.log(JSON.stringify({
      ok: true,
      class: client.constructor.name,
      project,
      token,
      id_token: (authorization || '').replace(/^Bearer /, ''),
    }));
  } catch (e) {
    console.log(JSON.stringify({ok: false, error: `${e.name}: ${e.message}`}));
  }
}

main();
