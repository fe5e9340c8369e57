// The git helpers of npm e2b 2.51 (`sandbox.git`), as the default user, on the base
// template (which has git since its recipe versions): a repository made in the sandbox is
// pushed to a bare "remote" in another directory, cloned back (branch, depth), changed on
// a branch, pulled; a pause and a resume in the middle change nothing.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { CommandExitError } from 'e2b'
import { createSandbox, killAll } from './helpers.mjs'

const T = { timeout: 300_000 }

test('sandbox.git: init, commit, push to a local bare remote, clone it back, branch, pull, across a pause', T, async () => {
  const sbx = await createSandbox()
  try {
    const origin = '/home/user/origin.git'
    const work = '/home/user/work'
    const copy = '/home/user/copy'
    assert.match((await sbx.commands.run('git --version')).stdout, /^git version 2\./)

    await sbx.git.init(origin, { bare: true, initialBranch: 'main' })
    await sbx.git.init(work, { initialBranch: 'main' })
    await sbx.git.configureUser('Stasis Test', 'test@stasis.invalid')
    assert.equal((await sbx.git.getConfig('user.name')).trim(), 'Stasis Test')
    await sbx.files.write(`${work}/README.md`, '# hello\n')
    let status = await sbx.git.status(work)
    assert.equal(status.currentBranch, 'main')
    assert.ok(status.fileStatus.some((f) => f.name === 'README.md' && f.status === 'untracked'), JSON.stringify(status))
    await sbx.git.add(work)
    await sbx.git.commit(work, 'first')
    await sbx.git.remoteAdd(work, 'origin', origin)
    await sbx.git.push(work, { remote: 'origin', branch: 'main' })
    status = await sbx.git.status(work)
    assert.ok(status.isClean, JSON.stringify(status))

    // The whole state, repositories and config included, across a pause.
    await sbx.pause()
    await sbx.connect()

    await sbx.git.clone(origin, { path: copy, branch: 'main', depth: 1 })
    assert.equal(await sbx.files.read(`${copy}/README.md`), '# hello\n')
    assert.equal((await sbx.commands.run(`git -C ${copy} log --format=%s`)).stdout.trim(), 'first')

    await sbx.git.createBranch(copy, 'feature')
    await sbx.files.write(`${copy}/feature.txt`, 'on a branch\n')
    await sbx.git.add(copy, { files: ['feature.txt'] })
    await sbx.git.commit(copy, 'feature work', { authorName: 'Other', authorEmail: 'other@stasis.invalid' })
    await sbx.git.checkoutBranch(copy, 'main')
    await sbx.commands.run(`git -C ${copy} merge --ff-only feature`)
    await sbx.git.push(copy)
    const branches = await sbx.git.branches(copy)
    assert.equal(branches.currentBranch, 'main')
    assert.deepEqual([...branches.branches].sort(), ['feature', 'main'])

    await sbx.git.pull(work, { remote: 'origin', branch: 'main' })
    assert.equal(await sbx.files.read(`${work}/feature.txt`), 'on a branch\n')
    const author = (await sbx.commands.run(`git -C ${work} log -1 --format=%an`)).stdout.trim()
    assert.equal(author, 'Other')

    // What git refuses reaches the caller as the command's failure, with git's words.
    await assert.rejects(sbx.git.clone('/home/user/nowhere.git', { path: '/home/user/x' }), (e) =>
      e instanceof CommandExitError && /does not exist|not a git repository/i.test(e.stderr))
  } finally {
    await killAll(sbx.sandboxId)
  }
})
