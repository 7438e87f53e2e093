// Runs after RequireJS and before the ipywidgets embed manager (nb_ipywidgets_js in _config.yml).
(function () {
  // 1. The manager loads its icon fonts from the folder RequireJS resolves its module name to: by
  //    default relative to the page (notebooks/@jupyter-widgets/html-manager/dist/, which does not
  //    exist). Point that name at _static/html-manager/, found from this script's own address, so
  //    the book works from any folder or host, offline.
  var here = document.currentScript.src;
  var staticDir = here.slice(0, here.lastIndexOf("/") + 1);
  window.requirejs.config({ paths: { "@jupyter-widgets/html-manager/dist": staticDir + "html-manager" } });

  // 2. html-manager 1.0.6 typesets widget labels with MathJax 2's API, MathJax.Hub.Queue, which
  //    MathJax 3 lacks ("Cannot read properties of undefined (reading 'Queue')"). Map it onto
  //    MathJax 3's typesetPromise. MathJax (a deferred script) has replaced window.MathJax by
  //    DOMContentLoaded, which fires before the manager renders its widgets.
  document.addEventListener("DOMContentLoaded", function () {
    var mathjax = window.MathJax;
    if (!mathjax || !mathjax.startup || mathjax.Hub) return;
    mathjax.Hub = {
      Queue: function (job) {  // job = ["Typeset", MathJax.Hub, element]
        mathjax.startup.promise = mathjax.startup.promise.then(function () {
          return mathjax.typesetPromise([job[2]]);
        });
      },
    };
  });
})();
