// Command lint checks the Dockerfile and compose.yaml with the parsers Docker itself uses,
// without a Docker engine (infra/containers/check runs it):
//
//	lint dockerfile FILE  BuildKit's Dockerfile frontend: parse, expand ARGs, resolve stages and
//	                      run the build checks of `docker build --check`. Base images are not
//	                      fetched: each resolves to an empty linux/amd64 image. Prints each
//	                      base image reference as "from REF" and each warning; fails on any.
//	lint compose FILE     compose-go, the loader of `docker compose`: interpolation, the
//	                      Compose Specification schema, merge keys, normalisation and the
//	                      consistency checks (depends_on, network_mode: service:, volumes).
//	                      Prints the resolved model as JSON (all profiles), like
//	                      `docker compose config --format json`.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/moby/buildkit/client/llb"
	"github.com/moby/buildkit/client/llb/sourceresolver"
	"github.com/moby/buildkit/frontend/dockerfile/dockerfile2llb"
	"github.com/moby/buildkit/frontend/dockerui"
	digest "github.com/opencontainers/go-digest"
)

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: lint dockerfile FILE | lint compose FILE")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "dockerfile":
		err = dockerfile(os.Args[2])
	case "compose":
		err = compose(os.Args[2])
	default:
		err = fmt.Errorf("unknown command %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "lint:", err)
		os.Exit(1)
	}
}

// offline answers every base image with an empty linux/amd64 image with one layer (so it is not
// taken for scratch), and remembers the references it was asked for.
type offline struct{ refs []string }

func (o *offline) ResolveImageConfig(_ context.Context, ref string, _ sourceresolver.Opt) (string, digest.Digest, []byte, error) {
	o.refs = append(o.refs, ref)
	config := map[string]any{
		"architecture": "amd64",
		"os":           "linux",
		"config":       map[string]any{"Env": []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}},
		"rootfs":       map[string]any{"type": "layers", "diff_ids": []string{digest.FromString(ref).String()}},
	}
	dt, err := json.Marshal(config)
	return ref, "", dt, err
}

func dockerfile(path string) error {
	dt, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	resolver := &offline{}
	source := llb.NewSourceMap(nil, filepath.Base(path), "Dockerfile", dt)
	source.Definition = &llb.Definition{}
	results, err := dockerfile2llb.DockerfileLint(context.Background(), dt, dockerfile2llb.ConvertOpt{
		Config:       dockerui.Config{},
		SourceMap:    source,
		MetaResolver: resolver,
	})
	if err != nil {
		return err
	}
	for _, ref := range resolver.refs {
		fmt.Printf("from %s\n", ref)
	}
	for _, w := range results.Warnings {
		line := 0
		if w.Location != nil && len(w.Location.Ranges) > 0 {
			line = int(w.Location.Ranges[0].Start.Line)
		}
		fmt.Printf("%s:%d: %s: %s (%s)\n", path, line, w.RuleName, w.Detail, w.URL)
	}
	if results.Error != nil {
		return fmt.Errorf("%s: %s", path, results.Error.Message)
	}
	if n := len(results.Warnings); n > 0 {
		return fmt.Errorf("%s: %d build check warning(s)", path, n)
	}
	return nil
}

func compose(path string) error {
	options, err := cli.NewProjectOptions([]string{path},
		cli.WithWorkingDirectory(filepath.Dir(path)),
		cli.WithOsEnv,
		cli.WithDotEnv,
		cli.WithProfiles([]string{"*"}),
		cli.WithConsistency(true),
		cli.WithNormalization(true),
		cli.WithResolvedPaths(true),
	)
	if err != nil {
		return err
	}
	project, err := options.LoadProject(context.Background())
	if err != nil {
		return err
	}
	out, err := project.MarshalJSON()
	if err != nil {
		return err
	}
	_, err = os.Stdout.Write(append(out, '\n'))
	return err
}
