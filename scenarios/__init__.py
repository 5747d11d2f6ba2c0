"""The bundled drills: YAML files shipped inside the package (`maildrill scenarios` lists them)."""
