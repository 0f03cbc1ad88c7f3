package scenarios

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// routerPatterns lists the ServeMux patterns the non-test sources of the package in dir
// register: the first argument of every X.Handle and X.HandleFunc call, evaluated from
// string literals, the package's string constants and those of the module's packages it
// imports (statuspage.Path). Tests that must reach every
// endpoint take them from here, so an endpoint added to a router is probed without
// anyone listing it by hand.
func routerPatterns(t *testing.T, dir string) []string {
	t.Helper()
	fset := token.NewFileSet()
	files := parseSources(t, fset, dir)
	consts := stringConsts(files)
	// Constants of other packages of this module the routers name (statuspage.Path), by
	// the name the files import them as.
	imported := map[string]map[string]ast.Expr{}
	for _, f := range files {
		for _, imp := range f.Imports {
			path, _ := strconv.Unquote(imp.Path.Value)
			rel, ok := strings.CutPrefix(path, modulePath+"/")
			if !ok {
				continue
			}
			name := filepath.Base(rel)
			if imp.Name != nil {
				name = imp.Name.Name
			}
			if _, done := imported[name]; !done {
				imported[name] = stringConsts(parseSources(t, token.NewFileSet(), filepath.Join("..", rel)))
			}
		}
	}
	var eval func(e ast.Expr) (string, bool)
	eval = func(e ast.Expr) (string, bool) {
		switch e := e.(type) {
		case *ast.BasicLit:
			if e.Kind != token.STRING {
				return "", false
			}
			s, err := strconv.Unquote(e.Value)
			return s, err == nil
		case *ast.Ident:
			if v, ok := consts[e.Name]; ok {
				return eval(v)
			}
		case *ast.SelectorExpr:
			if pkg, ok := e.X.(*ast.Ident); ok {
				if v, ok := imported[pkg.Name][e.Sel.Name]; ok {
					return eval(v)
				}
			}
		case *ast.ParenExpr:
			return eval(e.X)
		case *ast.BinaryExpr:
			if e.Op == token.ADD {
				a, ok1 := eval(e.X)
				b, ok2 := eval(e.Y)
				return a + b, ok1 && ok2
			}
		}
		return "", false
	}
	var out []string
	for _, f := range files {
		ast.Inspect(f, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok || len(call.Args) != 2 {
				return true
			}
			sel, ok := call.Fun.(*ast.SelectorExpr)
			if !ok || (sel.Sel.Name != "Handle" && sel.Sel.Name != "HandleFunc") {
				return true
			}
			p, ok := eval(call.Args[0])
			if !ok {
				t.Fatalf("%s: a route pattern this test cannot evaluate", fset.Position(call.Pos()))
			}
			if !slices.Contains(out, p) {
				out = append(out, p)
			}
			return true
		})
	}
	slices.Sort(out)
	return out
}

// modulePath is the module the routers' packages belong to.
const modulePath = "github.com/sibylhq/sibyl"

// parseSources parses the non-test Go files of dir.
func parseSources(t *testing.T, fset *token.FileSet, dir string) []*ast.File {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatalf("routes of %s: %v", dir, err)
	}
	var files []*ast.File
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || !strings.HasSuffix(name, ".go") || strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, filepath.Join(dir, name), nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatalf("routes of %s: %v", dir, err)
		}
		files = append(files, f)
	}
	return files
}

// stringConsts maps the package-level constants of files to their value expressions.
func stringConsts(files []*ast.File) map[string]ast.Expr {
	consts := map[string]ast.Expr{}
	for _, f := range files {
		for _, d := range f.Decls {
			g, ok := d.(*ast.GenDecl)
			if !ok || g.Tok != token.CONST {
				continue
			}
			for _, s := range g.Specs {
				vs := s.(*ast.ValueSpec)
				for i, n := range vs.Names {
					if i < len(vs.Values) {
						consts[n.Name] = vs.Values[i]
					}
				}
			}
		}
	}
	return consts
}

// splitPattern splits a ServeMux pattern into its method ("" for any) and path.
func splitPattern(p string) (method, path string) {
	if m, rest, ok := strings.Cut(p, " "); ok {
		return m, rest
	}
	return "", p
}
